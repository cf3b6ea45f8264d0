// Keyboard labelling: 1..9 pick a topic, 0 "none of these", s skip. Ignored while typing.
document.addEventListener("keydown", function (event) {
  var target = event.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  var button = document.querySelector('button[data-key="' + event.key + '"]');
  if (button) {
    event.preventDefault();
    button.click();
  }
});
