#!/usr/bin/env python3
"""Synthetic cluster dumps for the sluicectl scale benchmark.

Writes one JSON `List` (the shape of `kubectl get ns,pods,netpol -A -o json`) with Namespace,
Pod and NetworkPolicy objects. Deterministic for a given --seed.

  gen_dump.py --pods 100000 --namespaces 5000 --policies 10000 -o big.json
  gen_dump.py --pods 1000 --namespaces 20 --policies 500 -o matrix.json

Policy shapes cycle through what real clusters hold: default deny, allow from labelled
namespaces on a named port, allow from a pod selector with matchExpressions, egress with DNS,
egress to an ipBlock with except, and port ranges.
"""
import argparse
import json
import random
import sys

APPS = 20
TEAMS = 50


def namespace(i):
    name = f"ns-{i:05d}"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/metadata.name": name,
                "team": f"team-{i % TEAMS}",
                "env": "prod" if i % 3 else "dev",
            },
        },
    }


def pod(i, ns, rng):
    app = f"app-{rng.randrange(APPS)}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-{i:06d}",
            "namespace": ns,
            "labels": {"app": app, "tier": rng.choice(["frontend", "backend", "cache"]),
                       "version": f"v{rng.randrange(3)}"},
        },
        "spec": {
            "nodeName": f"node-{i % 200}",
            "containers": [{
                "name": "main",
                "image": "registry.example/app:1",
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                ],
            }],
        },
        "status": {
            "podIP": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            "podIPs": [
                {"ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"},
                {"ip": f"fd00:10::{i >> 16:x}:{i & 0xffff:x}"},
            ],
        },
    }


DNS_RULE = {
    "to": [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def policy(i, ns, rng):
    shape = i % 6
    app = f"app-{rng.randrange(APPS)}"
    spec = {"podSelector": {"matchLabels": {"app": app}}}
    if shape == 0:
        spec = {"podSelector": {}, "policyTypes": ["Ingress"]}
    elif shape == 1:
        spec["ingress"] = [{
            "from": [{"namespaceSelector": {"matchLabels": {"team": f"team-{rng.randrange(TEAMS)}"}}}],
            "ports": [{"port": "http"}],
        }]
    elif shape == 2:
        spec["ingress"] = [{
            "from": [{"podSelector": {"matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["frontend", "cache"]},
                {"key": "version", "operator": "NotIn", "values": ["v0"]},
            ]}}],
            "ports": [{"protocol": "TCP", "port": 8080, "endPort": 8090}],
        }, {
            "from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
                      "podSelector": {"matchLabels": {"tier": "backend"}}}],
        }]
    elif shape == 3:
        spec["policyTypes"] = ["Ingress", "Egress"]
        spec["ingress"] = [{"from": [{"podSelector": {"matchLabels": {"app": f"app-{rng.randrange(APPS)}"}}}]}]
        spec["egress"] = [DNS_RULE, {
            "to": [{"podSelector": {"matchLabels": {"tier": "backend"}}}],
            "ports": [{"port": "http"}],
        }]
    elif shape == 4:
        spec["policyTypes"] = ["Egress"]
        spec["egress"] = [DNS_RULE, {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "192.168.0.0/16"]}}],
            "ports": [{"protocol": "TCP", "port": 443}],
        }]
    else:
        b = rng.randrange(2)
        spec["ingress"] = [{
            "from": [{"ipBlock": {"cidr": f"10.{b}.0.0/16", "except": [f"10.{b}.{rng.randrange(256)}.0/24"]}},
                     {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": app}}}],
            "ports": [{"protocol": "TCP", "port": 9090}, {"protocol": "UDP", "port": 5000}],
        }]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"pol-{i:05d}", "namespace": ns},
        "spec": spec,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, required=True)
    ap.add_argument("--namespaces", type=int, required=True)
    ap.add_argument("--policies", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", default="-")
    args = ap.parse_args()
    if args.namespaces < 1 or args.pods < 0 or args.policies < 0 or args.pods >= 1 << 24:
        ap.error("need at least one namespace and fewer than 2^24 pods")
    rng = random.Random(args.seed)
    ns_names = [f"ns-{i:05d}" for i in range(args.namespaces)]
    items = [namespace(i) for i in range(args.namespaces)]
    items.append({"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": "kube-system",
                               "labels": {"kubernetes.io/metadata.name": "kube-system"}}})
    items += [pod(i, ns_names[i % args.namespaces], rng) for i in range(args.pods)]
    items += [policy(i, ns_names[i % args.namespaces], rng) for i in range(args.policies)]
    dump = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}
    out = sys.stdout if args.output == "-" else open(args.output, "w")
    json.dump(dump, out, separators=(",", ":"))
    out.write("\n")
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
