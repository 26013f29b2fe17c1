// Service worker: precache the app shell, the model and the WASM runtime so that a second visit
// works with the network off and downloads nothing but the page. The server fills in the cache name
// (app version + model hash) and the file list, so a new model or app version replaces the old cache.
// The runtime and the model have content-hashed URLs served as immutable: the page registers this
// worker after downloading them, so the precache takes them from the HTTP cache, not the network.
const CACHE = "__HYPODERM_CACHE__";
const PRECACHE = __HYPODERM_PRECACHE__;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(PRECACHE)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("hypoderm-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  // Only our own GETs; predictions (POST) always go to the network.
  if (req.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/api/v1/model") || url.pathname === "/") {
    // Network first, so a changed model or page shows up; the cache when offline.
    event.respondWith(
      fetch(req)
        .then((res) => {
          if (res.ok) { const copy = res.clone(); caches.open(CACHE).then((c) => c.put(req, copy)); }
          return res;
        })
        .catch(() => caches.match(req, { ignoreSearch: true }).then((hit) => hit || Response.error())),
    );
    return;
  }
  // Cache first. A content-hashed file (runtime, model) missing from the cache is kept once fetched:
  // its URL names its bytes, so it can never go stale.
  const hashed = /^\/(vendor\/ort|model)\/[0-9a-f]{16}\//.test(url.pathname);
  event.respondWith(caches.match(req, { ignoreSearch: true }).then((hit) => hit || fetch(req).then((res) => {
    if (hashed && res.ok) { const copy = res.clone(); caches.open(CACHE).then((c) => c.put(req, copy)); }
    return res;
  })));
});
