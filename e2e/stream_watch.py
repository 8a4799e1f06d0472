"""A StreamIsActive subscriber beside KEDA's: it opens the same call KEDA opens, on the scaler's Service address,
and prints each answer with the time it arrived on CLOCK_MONOTONIC (the clock the scenarios stamp the client's
first byte with; one clock for every process on this machine).

    python e2e/stream_watch.py ADDRESS NAMESPACE NAME KEY=VALUE...

Output, one line per answer: `<monotonic seconds> <true|false>`; `error <status>` if the call fails. A process
of its own, so that the client's threads never delay a stamp behind the interpreter lock.
"""
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main():
    import grpc
    sys.path.insert(0, str(REPO / "tests/peers"))
    from _externalscaler_gen import load
    pb2, pb2_grpc = load()
    address, namespace, name, *metadata = sys.argv[1:]
    ref = pb2.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=dict(m.split("=", 1) for m in metadata))
    with grpc.insecure_channel(address) as ch:
        try:
            for answer in pb2_grpc.ExternalScalerStub(ch).StreamIsActive(ref):
                print(f"{time.monotonic():.6f} {'true' if answer.result else 'false'}", flush=True)
        except grpc.RpcError as e:
            print(f"error {e.code().name}", flush=True)


if __name__ == "__main__":
    main()
