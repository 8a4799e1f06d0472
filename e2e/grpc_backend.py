#!/usr/bin/env python3
"""A gRPC backend over h2c (grpcio, a stack that is not ours): the standard health service, SERVING.

  python grpc_backend.py --host 10.244.0.5 --port 50051
"""
import argparse
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=50051)
    a = ap.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"{a.host}:{a.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
