const greet = (n) => `hello ${n`;
