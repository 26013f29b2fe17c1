// Past cases, stored only on this device (IndexedDB). Nothing here is ever sent to the server.

const DB_NAME = "hypoderm";
const STORE = "cases";

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function run(mode, fn) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req ? req.result : undefined);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** Save one case: {date, thumbnail (data URL), result, inference, model}; resolves to its id. */
export function addCase(item) {
  return run("readwrite", (s) => s.add(item));
}

/** All cases, newest first. */
export async function listCases() {
  const all = await run("readonly", (s) => s.getAll());
  return all.sort((a, b) => b.id - a.id);
}

export function deleteCase(id) {
  return run("readwrite", (s) => s.delete(id));
}

export function clearCases() {
  return run("readwrite", (s) => s.clear());
}

/** Download every case as one JSON file (thumbnails included as data URLs). */
export async function exportCases() {
  const cases = await listCases();
  const doc = { format: "hypoderm-history/1", exported: new Date().toISOString(), cases };
  const blob = new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = `hypoderm-history-${new Date().toISOString().slice(0, 10)}.json`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  return cases.length;
}
