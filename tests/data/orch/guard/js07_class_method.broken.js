class Counter {
  count = 0
  function inc() { this.count++; }
}
