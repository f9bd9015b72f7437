#!/usr/bin/env python3
"""Builds fedsky's shipped placement catalog from the raw public data in ../shared/data.

Run by hand from the repository root (or anywhere; paths are relative to this file):

    python3 operator/catalog/scripts/build_catalog.py \
        --data ../shared/data --out operator/catalog/catalog-2026-11.json

It needs only PyYAML (for the GCP pricing file). The output is deterministic: the same
inputs give the same bytes, so a diff of the committed catalog shows exactly what changed.

What it extracts, and what it deliberately does not invent:
- Regions: every AWS and GCP region that Skyplane measured RTT for (GCP zones such as
  `europe-west1-b` are mapped to their region). A region without instance prices stays
  in the catalog as a place where participants can be, but offers no aggregator.
- Instance types: a fixed list of general-purpose (and a few GPU) types, with vCPU,
  memory and the on-demand Linux hourly USD price per region from the price files.
  GPU counts of AWS types are not in the AWS price file; they are the public AWS
  specifications, listed in AWS_GPUS below.
- Network: one entry per unordered region pair with the RTT (mean of the two measured
  directions' average RTT), the largest max RTT seen, and the iperf3 throughput
  (64 connections, large VMs; the smaller of the two directions) where Skyplane has it.
  Pairs whose two directions differ by more than 25 % are flagged `asymmetric`, not fixed.
- Egress: AWS per-destination-region and internet prices from the Skyplane AWS transfer
  table; GCP premium-tier internet egress (first TB tier) per region from the GCP file.
  GCP inter-region prices are not in the data, so GCP egress to any region is priced at
  the internet rate (an upper bound).
"""

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import yaml

VERSION = "2026-11"

AWS_TYPES = [
    "t3.micro", "t3.small", "t3.medium", "t3.large", "t3.xlarge", "t3.2xlarge",
    "m5.large", "m5.xlarge", "m5.2xlarge", "m5.4xlarge",
    "m6i.large", "m6i.xlarge", "m6i.2xlarge",
    "c5.large", "c5.xlarge", "c5.2xlarge",
    "r5.large", "r5.xlarge", "r5.2xlarge",
    "g4dn.xlarge", "g5.xlarge", "p3.2xlarge",
]
# Public AWS specifications; the price file has no GPU column.
AWS_GPUS = {"g4dn.xlarge": (1, "T4"), "g5.xlarge": (1, "A10G"), "p3.2xlarge": (1, "V100")}

GCP_TYPES = [
    "e2-micro", "e2-small", "e2-medium", "e2-standard-2", "e2-standard-4", "e2-standard-8",
    "n2-standard-2", "n2-standard-4", "n2-standard-8", "n2-standard-16",
    "n2-highmem-2", "n2-highmem-4", "n2d-standard-2", "n2d-standard-4",
    "c2-standard-4", "n1-standard-4",
    "g2-standard-4", "a2-highgpu-1g",
]
# GPU keys used by the GCP pricing file, with the model name shown to users.
GCP_GPU_KEYS = {"l4": "L4", "a100": "A100", "t4": "T4", "v100": "V100", "h100": "H100"}

ASYMMETRY_FLAG = 0.25

SOURCES = [
    {
        "file": "latency_skyplane_2022.csv",
        "what": "RTT between cloud regions, ping from VMs (min/avg/max/mdev)",
        "source": "Skyplane project, skyplane-project/skyplane profiles/latency.csv, commit 945dca27",
        "date": "2022-04",
        "licence": "Apache-2.0",
    },
    {
        "file": "throughput_skyplane_2022.csv",
        "what": "iperf3 throughput between cloud regions (64 connections, large VMs)",
        "source": "Skyplane project, profiles/throughput.csv",
        "date": "2022-01",
        "licence": "Apache-2.0",
    },
    {
        "file": "egress_aws_skyplane.csv",
        "what": "AWS data-transfer price per GB, region to region and to the internet",
        "source": "Skyplane project, skyplane/data/aws_transfer_costs.csv",
        "date": "2023-04",
        "licence": "Apache-2.0",
    },
    {
        "file": "gcp_pricing_cyclenerd_2026-07-30.yml",
        "what": "GCP Compute Engine on-demand prices per machine type and region; internet egress",
        "source": "Nils Knieling, Cyclenerd/google-cloud-pricing-cost-calculator, pricing.yml",
        "date": "2026-07-30",
        "licence": "Apache-2.0",
    },
    {
        "file": "aws_ondemand_prices_2025-09.csv",
        "what": "AWS EC2 on-demand Linux prices (USD/hour) with vCPU and memory",
        "source": "public AWS prices as collected 2025-09, cross-checked against the SkyPilot catalog (t3)",
        "date": "2025-09",
        "licence": "facts (prices)",
    },
]


def region_key(raw):
    """`aws:eu-west-1` stays; GCP zones `gcp:europe-west1-b` become `gcp:europe-west1`."""
    cloud, name = raw.split(":", 1)
    if cloud == "gcp":
        name = name.rsplit("-", 1)[0]
    return f"{cloud}:{name}"


def num(x, digits=6):
    """Rounds to a fixed number of decimals so the output is stable and compact."""
    return round(float(x), digits)


def read_latency(data):
    rtt = defaultdict(list)
    rtt_max = defaultdict(float)
    with open(data / "latency_skyplane_2022.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["src_tier"] != "PREMIUM" or row["dst_tier"] != "PREMIUM":
                continue
            a, b = region_key(row["src_region"]), region_key(row["dst_region"])
            if a.startswith("azure") or b.startswith("azure"):
                continue
            rtt[(a, b)].append(float(row["avg_rtt"]))
            rtt_max[(a, b)] = max(rtt_max[(a, b)], float(row["max_rtt"]))
    return rtt, rtt_max


def read_throughput(data):
    gbps = defaultdict(list)
    with open(data / "throughput_skyplane_2022.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["src_tier"] != "PREMIUM" or row["dst_tier"] != "PREMIUM":
                continue
            if row["success"] != "True":
                continue
            a, b = region_key(row["src_region"]), region_key(row["dst_region"])
            gbps[(a, b)].append(float(row["throughput_received"]) / 1e9)
    return gbps


def read_aws_prices(data):
    prices = {}
    with open(data / "aws_ondemand_prices_2025-09.csv", newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            prices[(row["region_name"], row["instance_type"])] = row
    return prices


def read_aws_egress(data):
    egress = {}
    with open(data / "egress_aws_skyplane.csv", newline="") as f:
        for row in csv.DictReader(f):
            egress[(row["src"], row["dst"])] = float(row["cost"])
    return egress


def main():
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=here / "../../../../shared/data")
    parser.add_argument("--out", type=Path, default=here / f"../catalog-{VERSION}.json")
    args = parser.parse_args()
    data = args.data

    rtt, rtt_max = read_latency(data)
    gbps = read_throughput(data)
    aws_prices = read_aws_prices(data)
    aws_egress = read_aws_egress(data)
    with open(data / "gcp_pricing_cyclenerd_2026-07-30.yml") as f:
        gcp = yaml.safe_load(f)

    measured = sorted({k for pair in rtt for k in pair})
    aws_regions = [r.split(":", 1)[1] for r in measured if r.startswith("aws:")]
    gcp_regions = [r.split(":", 1)[1] for r in measured if r.startswith("gcp:")]

    # Instance types and their prices in measured regions only.
    instance_types = []
    for name in AWS_TYPES:
        hourly = {}
        spec = None
        for region in aws_regions:
            row = aws_prices.get((region, name))
            if row is None:
                continue
            spec = row
            hourly[region] = num(row["on_demand_price"])
        if spec is None:
            sys.exit(f"AWS type {name} has no price in any measured region")
        gpus, gpu_model = AWS_GPUS.get(name, (0, None))
        entry = {
            "cloud": "aws",
            "name": name,
            "vcpus": num(spec["vcpu_count"]),
            "memoryGib": num(spec["memory_gb"]),
            "gpus": gpus,
            "hourlyUsd": hourly,
        }
        if gpu_model:
            entry["gpuModel"] = gpu_model
        instance_types.append(entry)

    gcp_instances = gcp["compute"]["instance"]
    for name in GCP_TYPES:
        spec = gcp_instances[name]
        hourly = {
            region: num(spec["cost"][region]["hour"])
            for region in gcp_regions
            if region in spec["cost"] and "hour" in spec["cost"][region]
        }
        gpus, gpu_model = 0, None
        for key, model in GCP_GPU_KEYS.items():
            if key in spec:
                gpus, gpu_model = int(spec[key]), model
        entry = {
            "cloud": "gcp",
            "name": name,
            "vcpus": num(spec["cpu"]),
            "memoryGib": num(spec["ram"]),
            "gpus": gpus,
            "hourlyUsd": hourly,
        }
        if gpu_model:
            entry["gpuModel"] = gpu_model
        instance_types.append(entry)

    gcp_internet = gcp["compute"]["network"]["traffic"]["egress"]["internet"]["cost"]["0-1"]
    locations = gcp.get("region", {})
    regions = []
    for key in measured:
        cloud, name = key.split(":", 1)
        if cloud == "aws":
            internet = aws_egress.get((name, "internet"))
            if internet is None:
                sys.exit(f"no AWS internet egress price for {name}")
            to_regions = {
                f"aws:{dst}": aws_egress[(name, dst)]
                for dst in aws_regions
                if dst != name and (name, dst) in aws_egress
            }
            egress = {"internetPerGb": num(internet)}
            if to_regions:
                egress["toRegionsPerGb"] = dict(sorted(to_regions.items()))
            entry = {"cloud": cloud, "name": name, "egress": egress}
        else:
            if name not in gcp_internet:
                sys.exit(f"no GCP internet egress price for {name}")
            entry = {
                "cloud": cloud,
                "name": name,
                "egress": {"internetPerGb": num(gcp_internet[name]["month"])},
            }
            if name in locations and "location" in locations[name]:
                entry["location"] = locations[name]["location"]
        regions.append(entry)

    network = []
    for i, a in enumerate(measured):
        for b in measured[i:]:
            forward = rtt.get((a, b), [])
            backward = rtt.get((b, a), []) if a != b else []
            samples = forward + backward
            if not samples:
                if a == b:
                    continue  # no intra-region sample: the catalog default applies
                sys.exit(f"no RTT between {a} and {b}")
            entry = {"a": a, "b": b, "rttMs": num(sum(samples) / len(samples), 3)}
            worst = max(rtt_max.get((a, b), 0.0), rtt_max.get((b, a), 0.0))
            if worst > 0:
                entry["rttMaxMs"] = num(worst, 3)
            directions = [min(gbps[p]) for p in ((a, b), (b, a)) if gbps.get(p)]
            if directions:
                entry["throughputGbps"] = num(min(directions), 3)
            if forward and backward:
                f_mean = sum(forward) / len(forward)
                b_mean = sum(backward) / len(backward)
                if abs(f_mean - b_mean) > ASYMMETRY_FLAG * min(f_mean, b_mean):
                    entry["flags"] = ["asymmetric"]
            network.append(entry)

    catalog = {
        "version": VERSION,
        "description": "AWS and GCP regions, on-demand prices, egress prices and the "
        "Skyplane inter-region RTT/throughput matrix; built by "
        "operator/catalog/scripts/build_catalog.py from the public data listed in sources.",
        "sources": SOURCES,
        "defaults": {"intraRegionRttMs": 1.0, "intraRegionThroughputGbps": 10.0},
        "regions": regions,
        "instanceTypes": instance_types,
        "network": network,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(catalog, f, indent=1, sort_keys=False)
        f.write("\n")
    print(
        f"wrote {args.out.name}: {len(regions)} regions, {len(instance_types)} instance types, "
        f"{sum(len(t['hourlyUsd']) for t in instance_types)} prices, {len(network)} network entries"
    )


if __name__ == "__main__":
    main()
