"""The code sandbox: run untrusted Python under bubblewrap with resource limits, over HTTP or in-process.

- `runner.Sandbox`: one sandboxed run (bwrap namespaces, unprivileged uid, rlimits, wall-clock kill).
- `judge`: test cases (stdin/expected stdout, assert-style) to per-test verdicts.
- `server`: the HTTP server (`/run_code` in SandboxFusion's shape, `/evaluate`, `/health`) and
  `serve_in_background()` / `launch_subprocess()` for starting it from Python.
- `client.SandboxClient`: a small sync/async client that honours back-pressure (429 + Retry-After).
"""
