"""What `hypoderm bench` and `hypoderm compare` run: the zoo benchmark (bench.py: parameters, FLOPs, receptive
field, latency) and the comparison study (compare.py: many models, one protocol, one table; uses bench).

Import the sub-modules directly (`hypoderm.study.bench`, ...); this package imports nothing heavy."""
