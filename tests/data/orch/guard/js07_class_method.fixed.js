class Counter {
  count = 0;
  inc() { this.count++; }
}
