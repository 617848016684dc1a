// Copy-to-clipboard: buttons with data-copy="<id of the element whose text to copy>" or
// data-copy-text="<the text>". "Copied" is shown on the button and announced to screen readers.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy], [data-copy-text]");
  if (!button) return;
  const source = button.dataset.copy ? document.getElementById(button.dataset.copy) : null;
  const text = button.dataset.copyText ?? (source ? source.textContent : null);
  if (text === null) return;
  const announce = document.getElementById("announce");
  const done = () => {
    button.textContent = "Copied";
    if (announce) announce.textContent = "Copied to the clipboard";
    setTimeout(() => {
      button.textContent = "Copy";
      if (announce) announce.textContent = "";
    }, 1500);
  };
  const select = () => {  // plain-HTTP pages have no Clipboard API: copy through a selection
    let node = source;
    if (!node) {
      node = document.createElement("span");
      node.className = "copy-buffer";
      node.textContent = text;
      document.body.appendChild(node);
    }
    const range = document.createRange();
    range.selectNodeContents(node);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try { if (document.execCommand("copy")) done(); } catch (error) { /* the text stays selected */ }
    if (node !== source) { selection.removeAllRanges(); node.remove(); }
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, select);
  } else {
    select();
  }
});
