// Filters the IdP list as the user types. The page works without it.
(function () {
  var input = document.querySelector("input[data-filter]");
  if (!input) { return; }
  var list = document.getElementById(input.getAttribute("data-filter"));
  function filter() {
    var q = input.value.trim().toLowerCase();
    Array.prototype.forEach.call(list.children, function (li) {
      li.hidden = q !== "" && li.getAttribute("data-name").indexOf(q) === -1;
    });
  }
  input.addEventListener("input", filter);
  // Text typed before this script ran, or restored by the browser on "back", filters too.
  filter();
})();
