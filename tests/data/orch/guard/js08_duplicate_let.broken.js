let total = 0;
let total = 1;
