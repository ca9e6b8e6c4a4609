// Embedding map: hovering a point shows the sample's thumbnail; clicking opens the sample page.
(function () {
  "use strict";
  const box = document.getElementById("hover");
  if (!box) return;
  const img = box.querySelector("img"), label = box.querySelector("span");
  document.querySelectorAll("svg.scatter circle.pt").forEach(function (pt) {
    pt.addEventListener("mouseenter", function (ev) {
      img.src = "/img/pool/" + pt.dataset.id + "/thumb";
      label.textContent = pt.dataset.group;
      box.hidden = false;
      box.style.left = (ev.clientX + 12) + "px"; box.style.top = (ev.clientY + 12) + "px";
    });
    pt.addEventListener("mouseleave", function () { box.hidden = true; });
    pt.addEventListener("click", function () { window.location.href = "/data/sample/" + pt.dataset.id; });
  });
})();
