#!/usr/bin/env python3
"""Rendering per-instance recipes on one hub: an app of 1,000 `web` instances and one `db`, pushed a
recipe whose web state links to the whole group through a Jinja loop (so each web rendering loops over
1,000 members), then a member joining, then an attribute change that renders identically.

Usage: bench/render.py [HUB_BIN] (default target/release/opsagent-hub). Starts its own hub on
127.0.0.1 in a scratch directory, prints the timings, removes everything."""
import json, os, shutil, subprocess, sys, tempfile, time, urllib.request

hub_bin = sys.argv[1] if len(sys.argv) > 1 else "target/release/opsagent-hub"
data = tempfile.mkdtemp(prefix="opsagent-test-render-")
port = 7794
hub = subprocess.Popen([hub_bin, "--data-dir", data, "serve", "--listen", f"127.0.0.1:{port}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        if os.path.exists(os.path.join(data, "api-token")):
            break
        time.sleep(0.1)
    time.sleep(0.3)
    token = open(os.path.join(data, "api-token")).read().strip()

    def call(method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req).read())

    N = 1000
    call("POST", "/apps", {"id": "big"})
    for i in range(N):
        call("POST", "/apps/big/instances", {"id": f"web-{i}", "component": "web"})
    call("POST", "/apps/big/instances", {"id": "db-1", "component": "db"})

    def recipe(v):
        loop = '{%% for i in "@{web.InstanceId}".split(",") %%}{{ i }}\n{%% endfor %%} %d' % v
        return {"component": {
            "db": {"state": [{"id": "a", "module": "linux.file",
                              "parameter": {"path": "/tmp/x", "content": "@{self.InstanceId} %d" % v}}]},
            "web": {"state": [
                {"id": "w", "module": "meta.wait", "parameter": {"state": ["@{db.state.1}"]}},
                {"id": "c", "module": "linux.file",
                 "parameter": {"path": "/tmp/@{self.InstanceId}.conf", "content": loop}}]}}}

    def timed(f):
        t = time.perf_counter()
        f()
        return time.perf_counter() - t

    pushes = sorted(timed(lambda v=v: call("POST", "/apps/big/recipes", recipe(v))) for v in range(5))
    print(f"push, {N + 1} instances rendered and sent a new version: median {pushes[2]:.2f} s "
          f"(min {pushes[0]:.2f}, max {pushes[-1]:.2f}, 5 runs)")
    print(f"the same push again (nothing rendered): {timed(lambda: call('POST', '/apps/big/recipes', recipe(4))):.3f} s")
    print(f"a web member joins ({N + 2} renderings, {N + 1} new versions): "
          f"{timed(lambda: call('POST', '/apps/big/instances', {'id': 'web-new', 'component': 'web'})):.2f} s")
    print(f"an attribute no link names ({N + 2} renderings, nothing sent): "
          f"{timed(lambda: call('POST', '/apps/big/components/db', {'attributes': {'Port': '5432'}})):.3f} s")
finally:
    hub.terminate()
    hub.wait()
    shutil.rmtree(data, ignore_errors=True)
