int counter(void) {
    int n = 0;
    int n = 1;
    return n;
}
