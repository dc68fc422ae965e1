async function load() {
  const r = await fetch("/api");
  return r.json();
}
