struct node { int value; struct node *next; };
int first(struct node *n) { return n->val; }
