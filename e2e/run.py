"""Runs the real-cluster scenarios inside the network namespace scripts/e2e.sh made; writes the report.

  python e2e/run.py --go-bins CACHE --rust-bins target/debug --helm .peers/bin/helm [--only NAME ...]

Prints one line per scenario and, alone on the last line, `N passed, M failed`; exits 1 on any failure.
Every process it starts is stopped by PID before it exits, also on SIGINT/SIGTERM.
"""
import argparse
import json
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import ControlPlane, Keda, Proc  # noqa: E402
from addons import Httpscale, Upstream  # noqa: E402
from scenarios import SCENARIOS, Context, activation_medians  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def versions():
    out = {}
    for line in (REPO / "e2e/versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("#")[0].strip().split("=", 1)
            out[k] = v
    return out


def go_bins(cache, v):
    k8s = Path(cache) / f"k8s-{v['K8S_VERSION']}/bin"
    return {"etcd": Path(cache) / f"etcd-{v['ETCD_VERSION']}/bin/etcd",
            "kube-apiserver": k8s / "kube-apiserver", "kube-controller-manager": k8s / "kube-controller-manager",
            "kube-scheduler": k8s / "kube-scheduler", "kwok": Path(cache) / f"kwok-{v['KWOK_VERSION']}/bin/kwok"}


def run_differential(a, ctx, v, results):
    """Installs the add-on, runs the corpus, writes target/e2e/differential-<add-on>.json."""
    import differential
    ctx.hs.install()
    ctx.hs.start()
    ctx.interceptor_url = f"http://{ctx.hs.interceptors[0].ip}:8080"
    t = time.monotonic()
    out, rejected = differential.run(ctx)
    version = v["HTTP_ADDON_VERSION"] if a.differential == "upstream" else "httpscale"
    path = Path(a.report).parent / f"differential-{a.differential}.json"
    path.write_text(json.dumps({"add_on": a.differential, "version": version, "refused_setup": rejected,
                                "results": out}, indent=1) + "\n")
    print(f"{len(out)} requests sent to {a.differential} in {time.monotonic() - t:.0f}s; results in {path}", flush=True)
    results.append({"name": f"differential-{a.differential}", "passed": True, "seconds": round(time.monotonic() - t, 1)})
    return 0


def run_bench(a, ctx, results):
    """Installs the add-on and runs one side-by-side benchmark; its JSON goes to target/e2e/bench-<name>.json."""
    import bench
    ctx.hs.install()
    ctx.hs.start()
    ctx.interceptor_url = f"http://{ctx.hs.interceptors[0].ip}:8080"
    ctx.loadtest = Path(a.rust_bins) / "loadtest"
    out = Path(a.report).parent / f"bench-{a.bench}.json"
    t = time.monotonic()
    if a.bench == "data-path":
        bench.run(ctx, a.upstream_dir, out)
    else:
        bench.activation(ctx, out)
    results.append({"name": f"bench-{a.bench}", "passed": True, "seconds": round(time.monotonic() - t, 1)})
    print(f"bench {a.bench} done in {time.monotonic() - t:.0f}s: {out}", flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--go-bins", required=True, help="the cache directory scripts/e2e-build.sh printed")
    ap.add_argument("--rust-bins", required=True, help="where cargo put interceptor, scaler and operator")
    ap.add_argument("--helm", required=True)
    ap.add_argument("--workdir", default=str(REPO / "target/e2e/run"))
    ap.add_argument("--report", default=str(REPO / "target/e2e/report.json"))
    ap.add_argument("--only", nargs="*", help="run only these scenarios (and the ones before them they need)")
    ap.add_argument("--pause", action="store_true", help="keep the cluster up after the scenarios until Ctrl-C")
    ap.add_argument("--differential", choices=["httpscale", "upstream"],
                    help="instead of the scenarios, run the differential corpus against this add-on")
    ap.add_argument("--upstream-dir", help="the KEDA HTTP add-on's cache directory (bin/, crds/)")
    ap.add_argument("--bench", choices=["data-path", "activation-httpscale", "activation-upstream"],
                    help="instead of the scenarios, a side-by-side benchmark (e2e/bench.py)")
    a = ap.parse_args()
    v = versions()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # Every process started here may hold thousands of connections (the burst benchmarks): soft = hard limit.
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)

    workdir = Path(a.workdir)
    if workdir.exists():
        import shutil
        shutil.rmtree(workdir)
    plane = ControlPlane(go_bins(a.go_bins, v), workdir)
    keda = Keda(plane, Path(a.go_bins) / f"keda-{v['KEDA_VERSION']}/bin/keda",
                Path(a.go_bins) / f"keda-{v['KEDA_VERSION']}/crds")
    report = {"kubernetes_version": None, "keda_version": None, "scenarios": [], "activation_ms": None,
              "pinned": v}
    results, ctx, hs = [], None, None
    try:
        t = time.monotonic()
        plane.up()
        report["kubernetes_version"] = plane.admin.version()["gitVersion"]
        keda.install_crds()
        plane.admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "keda"}})
        keda.start()
        report["keda_version"] = keda.version()
        # The kubelet and kube-proxy stand-ins run in a process of their own (e2e/backends.py).
        node = Proc("node", [sys.executable, REPO / "e2e/backends.py", "--workdir", workdir], plane.logs).start()
        plane.procs["node"] = node
        go = a.differential == "upstream" or a.bench == "activation-upstream"
        hs = Upstream(plane, a.upstream_dir, a.helm) if go else Httpscale(plane, a.rust_bins, a.helm)
        ctx = Context(plane, keda, hs)
        print(f"cluster up in {time.monotonic() - t:.0f}s: Kubernetes {report['kubernetes_version']}, "
              f"KEDA {report['keda_version']}", flush=True)
        if a.differential:
            return run_differential(a, ctx, v, results)
        if a.bench:
            return run_bench(a, ctx, results)
        failed_before = None
        for name, fn in SCENARIOS:
            if a.only and name not in a.only and name not in ("install", "rbac"):
                continue
            t = time.monotonic()
            print(f"--- {name}", file=sys.stderr, flush=True)
            error = None
            if failed_before in ("install", "rbac"):
                error = f"not run: {failed_before} failed"
            else:
                try:
                    fn(ctx)
                except Exception as e:  # noqa: BLE001 - every failure is reported, the suite goes on
                    error = f"{type(e).__name__}: {e}"
                    traceback.print_exc(file=sys.stderr)
            seconds = round(time.monotonic() - t, 1)
            results.append({"name": name, "passed": error is None, "seconds": seconds})
            if error:
                failed_before = failed_before or name
                print(f"FAIL {name} ({seconds}s): {error}", flush=True)
            else:
                print(f"PASS {name} ({seconds}s)", flush=True)
        if a.pause:
            print(f"paused with the cluster up (admin kubeconfig {plane.admin_kubeconfig}); Ctrl-C ends", flush=True)
            signal.pause()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        print(f"FAIL cluster: {type(e).__name__}: {e}", flush=True)
        results.append({"name": "cluster", "passed": False, "seconds": 0})
    finally:
        if hs:
            hs.stop()
        plane.down()
    if a.differential or a.bench:
        return 0 if results and all(r["passed"] for r in results) else 1
    report["scenarios"] = results
    report["activation_ms"] = activation_medians(ctx) if ctx else None
    Path(a.report).parent.mkdir(parents=True, exist_ok=True)
    Path(a.report).write_text(json.dumps(report, indent=2) + "\n")
    passed = sum(r["passed"] for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
