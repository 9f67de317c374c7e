// durable-flow viewer, run page: Send matching event. The form works without this file (a plain POST
// to the send-event action); with it, the payload's JSON is checked before sending and an error is
// shown in the form, which keeps what was typed, and the run page stays open.
(function () {
  'use strict';

  function show(element, text) {
    element.textContent = text;
    element.hidden = !text;
  }

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!form || !form.hasAttribute || !form.hasAttribute('data-send-event')) return;
    event.preventDefault();
    var error = form.querySelector('.form-error');
    var status = form.querySelector('.form-status');
    var payload = form.querySelector('textarea[name="payload"]');
    var button = form.querySelector('button[type="submit"]');
    show(status, '');
    try {
      JSON.parse(payload.value.trim() === '' ? '{}' : payload.value);
    } catch (parseError) {
      payload.setAttribute('aria-invalid', 'true');
      show(error, 'The payload is not valid JSON: ' + parseError.message + '. Nothing was sent.');
      payload.focus();
      return;
    }
    payload.removeAttribute('aria-invalid');
    show(error, '');
    button.disabled = true;
    fetch(form.action, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(new window.FormData(form)).toString(),
    })
      .then(function (response) {
        return response.json().then(
          function (body) {
            return { ok: response.ok, body: body };
          },
          function () {
            return { ok: false, body: { error: 'HTTP ' + response.status } };
          }
        );
      })
      .then(function (answer) {
        if (!answer.ok) throw new Error(answer.body.error || 'The event was not sent');
        show(status, 'Sent. The run wakes up…');
        // The live channel redraws the page; without it, load it again.
        var indicator = document.querySelector('[data-live-indicator]');
        if (!indicator || indicator.getAttribute('data-state') !== 'live') window.location.reload();
      })
      .catch(function (sendError) {
        show(error, sendError.message);
        button.disabled = false;
      });
  });
})();
