"""Prometheus text exposition of jobs, node durations, cache hits, model loads and memory."""

from __future__ import annotations

import os
from collections import defaultdict

from engine import events as ev


class Metrics:
    """Counters fed by engine events; rendered on ``GET /metrics``."""

    def __init__(self):
        self.node_seconds: dict[str, float] = defaultdict(float)
        self.node_runs: dict[str, int] = defaultdict(int)
        self.node_failures: dict[str, int] = defaultdict(int)
        self.node_cached: dict[str, int] = defaultdict(int)

    def observe(self, event: ev.Event) -> None:
        """Engine listener."""
        if isinstance(event, ev.NodeFinished):
            self.node_seconds[event.node_type] += event.elapsed
            self.node_runs[event.node_type] += 1
        elif isinstance(event, ev.NodeCached):
            self.node_cached[event.node_type] += 1
        elif isinstance(event, ev.NodeFailed):
            self.node_failures[event.node_type] += 1

    def render(self, job_counts: dict[str, int], engine) -> str:
        """The exposition text."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples):
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                label = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                lines.append(f"{name}{{{label}}} {value}" if label else f"{name} {value}")

        states = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
        metric("flow_jobs", "gauge", "Jobs by state.", [({"state": s}, job_counts.get(s, 0)) for s in states])
        metric("flow_node_seconds_total", "counter", "Seconds spent running nodes, by node type.",
               [({"type": t}, round(v, 6)) for t, v in sorted(self.node_seconds.items())])
        metric("flow_node_runs_total", "counter", "Nodes run, by node type.",
               [({"type": t}, v) for t, v in sorted(self.node_runs.items())])
        metric("flow_node_failures_total", "counter", "Nodes that failed, by node type.",
               [({"type": t}, v) for t, v in sorted(self.node_failures.items())])
        metric("flow_node_cache_hits_total", "counter", "Nodes served from the output cache, by node type.",
               [({"type": t}, v) for t, v in sorted(self.node_cached.items())])
        stats = engine.cache.stats()
        metric("flow_cache_bytes", "gauge", "Bytes held by the output cache.", [({}, stats["bytes"])])
        metric("flow_cache_evictions_total", "counter", "Output cache evictions.", [({}, stats["evictions"])])
        models = engine.models
        if models is not None:
            from dataclasses import asdict

            for field, value in asdict(models.counters).items():
                metric(f"flow_model_{field}_total", "counter", f"Model manager: {field.replace('_', ' ')}.",
                       [({}, value)])
        metric("flow_process_resident_bytes", "gauge", "Resident memory of the flow process.", [({}, _rss())])
        return "\n".join(lines) + "\n"


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
