// Keyboard labelling: 1..9 pick a topic, 0 "none of these", s skip, / jumps to the list of
// the model's other topics. Ignored while typing; Esc leaves a text field.
function isTyping(target) {
  if (!target) return false;
  var tag = target.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
}

document.addEventListener("keydown", function (event) {
  if (event.defaultPrevented || event.isComposing) return;
  var target = event.target;
  if (isTyping(target)) {
    if (event.key === "Escape") target.blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  var search = document.getElementById("topic-search");
  if (event.key === "/" && search) {
    event.preventDefault();
    search.focus();
    return;
  }
  var button = document.querySelector('button[data-key="' + CSS.escape(event.key) + '"]');
  if (button) {
    event.preventDefault();
    button.click();
  }
});

// The type-ahead for the topics without a number key: a combobox over a listbox (focus stays
// in the input; aria-activedescendant names the highlighted option). Picking an option puts
// its topic on the submit button, which sends it in the same "label" field as the keys.
(function () {
  var input = document.getElementById("topic-search");
  var list = document.getElementById("topic-options");
  var submit = document.getElementById("topic-submit");
  var picked = document.getElementById("topic-picked");
  var status = document.getElementById("topic-status");
  if (!input || !list || !submit || !picked || !status) return;
  var options = Array.prototype.slice.call(list.querySelectorAll('[role="option"]'));
  var active = null;

  function visible() {
    return options.filter(function (o) { return !o.hidden; });
  }

  function setActive(option) {
    if (active) active.setAttribute("aria-selected", "false");
    active = option;
    if (option) {
      option.setAttribute("aria-selected", "true");
      input.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function open(show) {
    list.hidden = !show;
    input.setAttribute("aria-expanded", show ? "true" : "false");
    if (!show) setActive(null);
  }

  function setPicked(label) {
    submit.value = label || "";
    submit.disabled = !label;
    picked.textContent = label || "(pick a topic)";
    input.removeAttribute("aria-invalid");
  }

  function exact() {
    var value = input.value;
    for (var i = 0; i < options.length; i++) {
      if (options[i].dataset.label === value) return options[i];
    }
    return null;
  }

  function filter() {
    var query = input.value.trim().toLowerCase();
    options.forEach(function (o) {
      o.hidden = query !== "" && o.dataset.label.toLowerCase().indexOf(query) === -1;
    });
    var shown = visible();
    var match = exact();
    setPicked(match ? match.dataset.label : null);
    open(shown.length > 0);
    setActive(match && !match.hidden ? match : shown[0] || null);
    status.textContent =
      shown.length === 1 ? "1 topic matches" : shown.length + " topics match";
  }

  function pick(option) {
    input.value = option.dataset.label;
    setPicked(option.dataset.label);
    open(false);
    status.textContent = option.dataset.label + " picked; Enter labels the item";
  }

  function move(step) {
    var shown = visible();
    if (list.hidden) {
      filter();
      return;
    }
    if (!shown.length) return;
    var at = shown.indexOf(active);
    setActive(shown[(at + step + shown.length) % shown.length]);
  }

  input.addEventListener("input", filter);
  input.addEventListener("blur", function () { open(false); });
  input.addEventListener("keydown", function (event) {
    if (event.isComposing) return;
    if (event.key === "ArrowDown") {
      event.preventDefault();
      move(1);
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      move(-1);
    } else if (event.key === "Enter") {
      event.preventDefault(); // never the form's implicit submission
      if (!list.hidden && active) {
        pick(active);
      } else if (exact()) {
        pick(exact());
        submit.form.requestSubmit(submit);
      } else {
        input.setAttribute("aria-invalid", "true");
        status.textContent = "No topic picked: choose one from the list";
      }
    } else if (event.key === "Tab" && !event.shiftKey && !list.hidden && active) {
      event.preventDefault();
      pick(active);
      submit.focus();
    } else if (event.key === "Escape" && !list.hidden) {
      event.preventDefault(); // the first Esc closes the list, the next leaves the field
      open(false);
    }
  });
  list.addEventListener("mousedown", function (event) {
    event.preventDefault(); // keep the focus in the input
  });
  list.addEventListener("click", function (event) {
    var option = event.target.closest('[role="option"]');
    if (option) {
      pick(option);
      input.focus();
    }
  });
})();
