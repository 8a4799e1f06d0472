#!/usr/bin/env python3
"""A gRPC server reflection client that is not tonic: Python grpcio with grpcio-reflection, as grpcurl would
ask, without any proto file.

v1alpha: grpcio-reflection's ProtoReflectionDescriptorDatabase lists the services, resolves SYMBOL to its file
descriptor and loads it into a descriptor pool. v1 (grpc.reflection.v1, whose messages are field-for-field
those of v1alpha): the same questions sent raw on the v1 method, then an unknown symbol on a stream of its own,
reported as `unknown_symbol` (an in-stream error_response, or the status ending the stream). Prints one JSON line
per version; exit 0 iff every call for a known name succeeded.

  python reflection_client.py --addr 127.0.0.1:9090 --symbol externalscaler.ExternalScaler
"""
import argparse
import json

import grpc
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_reflection.v1alpha.reflection_pb2 import ServerReflectionRequest, ServerReflectionResponse


def v1alpha(ch, symbol):
    db = ProtoReflectionDescriptorDatabase(ch)
    services = sorted(db.get_services())
    file = db.FindFileContainingSymbol(symbol)
    service = DescriptorPool(db).FindServiceByName(symbol)
    return {"version": "v1alpha", "services": services, "file": file.name,
            "methods": [m.name for m in service.methods]}


def v1(ch, symbol, timeout):
    call = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                            request_serializer=ServerReflectionRequest.SerializeToString,
                            response_deserializer=ServerReflectionResponse.FromString)
    requests = [ServerReflectionRequest(list_services=""), ServerReflectionRequest(file_containing_symbol=symbol)]
    listed, found = list(call(iter(requests), timeout=timeout))
    files = [FileDescriptorProto.FromString(b) for b in found.file_descriptor_response.file_descriptor_proto]
    short = symbol.rsplit(".", 1)[-1]
    methods = [m.name for f in files for s in f.service if s.name == short for m in s.method]
    return {"version": "v1", "services": sorted(s.name for s in listed.list_services_response.service),
            "file": files[0].name if files else None, "methods": methods,
            "unknown_symbol": unknown_symbol(call, symbol + "DoesNotExist", timeout)}


def unknown_symbol(call, symbol, timeout):
    try:
        [answer] = list(call(iter([ServerReflectionRequest(file_containing_symbol=symbol)]), timeout=timeout))
        e = answer.error_response
        return {"code": next(c.name for c in grpc.StatusCode if c.value[0] == e.error_code),
                "details": e.error_message, "in_stream": True}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details(), "in_stream": False}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="127.0.0.1:9090")
    ap.add_argument("--symbol", default="externalscaler.ExternalScaler")
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()
    with grpc.insecure_channel(a.addr) as ch:
        grpc.channel_ready_future(ch).result(timeout=a.timeout)
        print(json.dumps(v1alpha(ch, a.symbol)), flush=True)
        print(json.dumps(v1(ch, a.symbol, a.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
