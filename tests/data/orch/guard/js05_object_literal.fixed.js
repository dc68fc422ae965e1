const user = { name: "ana", age: 31 };
