// The console works without this file; it only hides the credential fields that the chosen
// authentication type does not use (each field lists its types in data-auth-types).
(function () {
  "use strict";
  function showFieldsFor(select) {
    var form = select.form;
    var chosen = select.value;
    form.querySelectorAll("[data-auth-types]").forEach(function (field) {
      var types = field.getAttribute("data-auth-types").split(" ");
      field.hidden = chosen !== "" && types.indexOf(chosen) === -1;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-auth-type-select]").forEach(function (select) {
      showFieldsFor(select);
      select.addEventListener("change", function () { showFieldsFor(select); });
    });
  });
})();
