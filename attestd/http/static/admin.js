// Review previews: one image revealed at a time, by a deliberate click or key press.
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.reveal");
  if (!button) return;
  const img = button.parentElement.querySelector("img[data-clear]");
  const showing = button.getAttribute("aria-pressed") === "true";
  document.querySelectorAll("button.reveal[aria-pressed='true']").forEach((other) => {
    const otherImg = other.parentElement.querySelector("img[data-clear]");
    otherImg.src = otherImg.dataset.obscured;
    otherImg.classList.add("obscured");
    otherImg.alt = "Blurred preview";
    other.setAttribute("aria-pressed", "false");
    other.textContent = "Reveal";
  });
  if (showing) return;
  img.src = img.dataset.clear;
  img.classList.remove("obscured");
  img.alt = "Revealed image";
  button.setAttribute("aria-pressed", "true");
  button.textContent = "Hide";
});
