static int add(int a, int b) { return a + b; }
int three(void) { return add(1, 2); }
