"""HTTP/1.1 for the vendor client: libcurl (pycurl), one kept-alive handle per calling thread
(the reconciliation's reads; the transfer calls share one thread: `vendor_calls`).

Why not `http.client`: every vendor call is one request and one answer on a kept-alive
connection, and with `http.client` (its headers validated one by one on the way out, parsed
through the `email` package on the way back) the whole client spent 400-460 µs of CPU a call;
with libcurl doing the HTTP in C, 225-290 µs (`make bench-vendor`, alternating). At
hundreds of calls a second that is a tenth of the outbox process's CPU.

What `http.client` did and libcurl must be told: no proxy from the environment (coterm never
used one), no `Expect: 100-continue` round trip, redirects not followed (the client parks the
call at once: `COTERM_VENDOR_URL` is wrong), and the system's CA certificates (the pycurl
wheels carry a libcurl built elsewhere, whose default CA path a Debian machine lacks).
"""

import os
import ssl
import threading
from io import BytesIO

import certifi
import pycurl

# The status (None: no answer), the body's text (or what went wrong), and the headers (lower-case
# names) of an answer that is not a 2xx.
Answer = tuple[int | None, str, dict[str, str]]


class Transport:
    """`get` from any thread; each thread keeps its own handle (and so its connection). The
    transfer calls (POST) run on their own thread's handles (`vendor_calls`)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._ca = trusted_certificates()

    def get(self, url: str, headers: list[str]) -> Answer:
        """`headers` as libcurl takes them ("Name: value")."""
        curl = self._handle()
        received, header_lines = BytesIO(), []
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.HTTPGET, 1)
        curl.setopt(pycurl.HTTPHEADER, [*headers, "Expect:"])
        curl.setopt(pycurl.WRITEDATA, received)
        curl.setopt(pycurl.HEADERFUNCTION, header_lines.append)
        try:
            curl.perform()
        except pycurl.error as error:
            detail = failure(curl, error.args[0], error.args[1] if len(error.args) > 1 else "")
            self.close()  # a handle in an unknown state is not reused: the next call connects afresh
            return None, detail, {}
        status = curl.getinfo(pycurl.RESPONSE_CODE)
        # A success's headers are never read (the client wants Retry-After and Location, which
        # come with a refusal, a throttle or a redirect): not parsing them saves a fifth of a call.
        headers = {} if 200 <= status < 300 else parsed_headers(header_lines)
        return status, received.getvalue().decode("utf-8", "replace"), headers

    def _handle(self) -> "pycurl.Curl":
        curl = getattr(self._local, "curl", None)
        if curl is None:
            curl = self._local.curl = configured(pycurl.Curl(), self.timeout_s, self._ca)
        return curl

    def close(self) -> None:
        """Close this thread's handle and its kept-alive connection."""
        curl = getattr(self._local, "curl", None)
        self._local.curl = None
        if curl is not None:
            curl.close()


def configured(curl: "pycurl.Curl", timeout_s: float, ca: list[tuple[int, str]] | None = None) -> "pycurl.Curl":
    """A handle set as every vendor request needs it (`Transport`, `vendor_calls`)."""
    timeout_ms = int(timeout_s * 1000)
    curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without signals: not the main thread
    curl.setopt(pycurl.TIMEOUT_MS, timeout_ms)
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, timeout_ms)
    curl.setopt(pycurl.PROXY, "")  # not the environment's http_proxy: the vendor is called directly
    curl.setopt(pycurl.FOLLOWLOCATION, 0)
    for option, path in ca if ca is not None else trusted_certificates():
        curl.setopt(option, path)
    return curl


def trusted_certificates() -> list[tuple[int, str]]:
    """What `http.client` trusts, the system's certificates (as `ssl` finds them), as libcurl
    options; where the system has none, certifi's bundle."""
    paths = ssl.get_default_verify_paths()
    found = [(option, path) for option, path in ((pycurl.CAINFO, paths.cafile), (pycurl.CAPATH, paths.capath))
             if path and os.path.exists(path)]
    return found or [(pycurl.CAINFO, certifi.where())]


def parsed_headers(lines: list[bytes]) -> dict[str, str]:
    """The last answer's headers (lower-case names): an interim `100 Continue` has its own block."""
    headers: dict[str, str] = {}
    for raw in lines:
        line = raw.decode("latin-1")
        if line.startswith("HTTP/"):
            headers.clear()
        elif ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers


def failure(curl: "pycurl.Curl", code: int, message: str) -> str:
    """What went wrong (libcurl's error `code` and `message`), in the words the operating system
    uses where it has them ("Connection refused")."""
    errno = curl.getinfo(pycurl.OS_ERRNO)
    reason = f"{os.strerror(errno)}: " if errno else ""
    kind = "timed out" if code == pycurl.E_OPERATION_TIMEDOUT else f"curl error {code}"
    return f"{reason}{kind}: {message}"
