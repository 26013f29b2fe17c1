"""Progress output suits where it goes (issue 12, item 10): plain lines when not a terminal."""

from __future__ import annotations

import io
import json
from pathlib import Path

from hypoderm.progress import PlainProgress, progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    items = list(progress_bar(range(50), desc="decoding", unit="img", file=out))
    text = out.getvalue()
    assert items == list(range(50)) and "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "decoding: 5/50 img (10%)" and lines[-1] == "decoding: 50/50 img (100%) done"
    assert len(lines) == 10 and not any(line.startswith("decoding: 0/") for line in lines)  # no stale 0% line


def test_counter_with_postfix_and_no_output_when_disabled() -> None:
    out = io.StringIO()
    bar = progress_bar(total=4, desc="epoch 1/3", unit="batch", file=out)
    assert isinstance(bar, PlainProgress)
    for _ in range(4):
        bar.update(1)
        bar.set_postfix(loss="0.500")
    bar.close()
    assert out.getvalue().splitlines()[-1] == "epoch 1/3: 4/4 batch (100%) [loss=0.500] done"
    quiet = io.StringIO()
    off = progress_bar(range(3), disable=True, file=quiet)
    assert list(off) == [0, 1, 2] and quiet.getvalue() == ""


def test_terminal_gets_tqdm() -> None:
    from tqdm import tqdm

    bar = progress_bar(total=3, desc="x", file=_Tty())
    assert isinstance(bar, tqdm)
    bar.close()


def test_training_curves_have_whole_epoch_ticks(tmp_path: Path) -> None:
    from hypoderm.engine.plots import plot_training_curves

    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"epoch": e, "train/loss": 1 / e, "val/loss": 1.1 / e, "val/macro_f1": 0.5,
                                       "val/accuracy": 0.6}) + "\n" for e in (1, 2, 3)))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    captured = {}
    real_close = plt.close

    def keep(fig=None):  # read the ticks before the figure is closed
        if fig is not None and hasattr(fig, "axes"):
            captured["ticks"] = [list(ax.get_xticks()) for ax in fig.axes]
        real_close(fig)

    plt.close = keep
    try:
        plot_training_curves(log, tmp_path / "curves.png")
    finally:
        plt.close = real_close
    assert captured["ticks"] and all(float(t).is_integer() for ticks in captured["ticks"] for t in ticks)
