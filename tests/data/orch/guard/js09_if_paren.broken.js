if x > 3 {
  console.log("big");
}
