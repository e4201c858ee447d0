"""A baseline as data: one ``quietcore.verify/v1`` document per host (with that host's
``quietcore.jitter/v1`` part when the profile measures jitter) and a manifest naming them.

Each stored host file is a whole verify document of that host alone, so every tool that reads
verify reports (``quietcore report diff``, the renderers) reads a baseline's host as well.
Pure: documents in, documents out; ``store`` does the files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quietcore.report.document import HOST_STATUSES, Document
from quietcore.report.jitter_json import HOST_STATUSES as JITTER_STATUSES

SCHEMA_ID = "quietcore.baseline/v1"


class BaselineError(ValueError):
    """A baseline that cannot be saved, found or read; the message says which and why."""


@dataclass(frozen=True)
class BaselineHost:
    host: str
    verify: Mapping[str, Any]  # the host's entry in the verify document's ``hosts``
    jitter: Mapping[str, Any] | None  # its entry in the jitter document's ``hosts``, if measured


@dataclass(frozen=True)
class Baseline:
    name: str
    saved_at: str
    quietcore_version: str
    profile: Mapping[str, Any]  # the verify document's ``profile`` block: name, digest, files
    jitter: bool  # saved with a jitter measurement (the profile has verify.jitter)
    hosts: Mapping[str, BaselineHost]


def _verify_summary(hosts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    statuses = [host["status"] for host in hosts]
    return {"hosts": len(hosts), **{status: statuses.count(status) for status in HOST_STATUSES}}


def _jitter_summary(hosts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    statuses = [host["status"] for host in hosts]
    return {"hosts": len(hosts), **{status: statuses.count(status) for status in JITTER_STATUSES}}


def with_hosts(document: Document, names: Sequence[str]) -> dict[str, Any]:
    """``document`` cut down to the hosts ``names`` (in that order), summaries recounted."""
    hosts = [host for name in names for host in document["hosts"] if host["host"] == name]
    cut: dict[str, Any] = {**document, "hosts": hosts, "summary": _verify_summary(hosts)}
    jitter: Mapping[str, Any] | None = document.get("jitter")
    if jitter is not None:
        measured = [host for name in names for host in jitter["hosts"] if host["host"] == name]
        cut["jitter"] = {**jitter, "hosts": measured, "summary": _jitter_summary(measured)}
    return cut


def joined(documents: Sequence[Document]) -> dict[str, Any]:
    """The host documents of one baseline as a single verify document (the first one's
    profile, time and version: they were made by one run)."""
    names = [host["host"] for document in documents for host in document["hosts"]]
    whole: dict[str, Any] = {
        **documents[0],
        "hosts": [host for document in documents for host in document["hosts"]],
    }
    if "jitter" in documents[0]:
        whole["jitter"] = {
            **documents[0]["jitter"],
            "hosts": [host for document in documents for host in document["jitter"]["hosts"]],
        }
    return with_hosts(whole, names)


def manifest(name: str, document: Document, files: Mapping[str, str]) -> dict[str, Any]:
    """What ``baseline.json`` says: which run, which profile, and each host's file."""
    jitter = {host["host"]: host["status"] for host in document.get("jitter", {}).get("hosts", ())}
    return {
        "schema": SCHEMA_ID,
        "name": name,
        "saved_at": document["generated_at"],
        "quietcore_version": document["quietcore_version"],
        "profile": document["profile"],
        "jitter": "jitter" in document,
        "hosts": [
            {
                "host": host["host"],
                "file": files[host["host"]],
                "status": host["status"],
                "drift": host["summary"]["drift"] + host["summary"]["missing"],
                "jitter": jitter.get(host["host"]),
            }
            for host in document["hosts"]
        ],
    }


def baseline_from(listing: Mapping[str, Any], documents: Mapping[str, Document]) -> Baseline:
    """The baseline a manifest and its host documents (by file name) describe."""
    if listing.get("schema") != SCHEMA_ID:
        raise BaselineError(f"not a {SCHEMA_ID} manifest")
    hosts = {}
    try:
        for entry in listing["hosts"]:
            document = documents[entry["file"]]
            [verify] = document["hosts"]
            measured = document.get("jitter", {}).get("hosts", [])
            hosts[entry["host"]] = BaselineHost(
                entry["host"], verify, measured[0] if measured else None
            )
        return Baseline(
            name=listing["name"],
            saved_at=listing["saved_at"],
            quietcore_version=listing["quietcore_version"],
            profile=listing["profile"],
            jitter=listing["jitter"],
            hosts=hosts,
        )
    except (KeyError, TypeError, ValueError) as problem:
        raise BaselineError(f"{SCHEMA_ID}: bad or missing {problem}") from None
