"""JUnit XML, the test-result format Jenkins, GitLab and the GitHub test-report actions read.

The shape follows Apache Ant's XMLJUnitResultFormatter (the de-facto standard): a <testsuites> root
holding one <testsuite> with its counts, <properties>, the <testcase>s, then <system-out> and
<system-err>; a testcase holds at most one of <failure>, <error>, <skipped>."""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from optcli.atomic import atomic_write


@dataclass
class JUnitCase:
    name: str
    classname: str
    time_s: float = 0.0
    failure: str | None = None
    error: str | None = None
    skipped: str | None = None
    system_out: str | None = None


# XML 1.0 forbids most control characters even escaped; a stray one in a message would make the
# whole file unreadable to the CI, so they are dropped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MESSAGE_CHARS = 500  # the message attribute is what CI lists show; the full text is the element body


def _clean(text: str) -> str:
    return _NOT_XML.sub("", str(text))


def _timestamp(value: str | None) -> str:
    """Ant's form: seconds, no zone (its schema rejects an offset); given times are moved to UTC."""
    moment = datetime.now(timezone.utc)
    if value:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        moment = parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _seconds(value: float) -> str:
    return f"{max(float(value), 0.0):.3f}"


def _outcome(parent: ET.Element, tag: str, text: str, kind: str) -> None:
    text = _clean(text)
    first = text.splitlines()[0] if text else ""
    element = ET.SubElement(parent, tag, {"message": first[:_MESSAGE_CHARS], "type": kind})
    element.text = text


def _case(parent: ET.Element, case: JUnitCase) -> None:
    element = ET.SubElement(
        parent,
        "testcase",
        {"name": _clean(case.name), "classname": _clean(case.classname), "time": _seconds(case.time_s)},
    )
    # One outcome per testcase (Ant's schema): an error outranks a failure, a failure a skip.
    if case.error is not None:
        _outcome(element, "error", case.error, "error")
    elif case.failure is not None:
        _outcome(element, "failure", case.failure, "failure")
    elif case.skipped is not None:
        ET.SubElement(element, "skipped", {"message": _clean(case.skipped)[:_MESSAGE_CHARS]})
    if case.system_out:
        ET.SubElement(element, "system-out").text = _clean(case.system_out)


def junit_xml(suite_name: str, cases: list[JUnitCase], *, timestamp: str | None = None) -> str:
    """The JUnit document for one suite of `cases` (timestamp: ISO 8601, default now)."""
    errors = sum(c.error is not None for c in cases)
    failures = sum(c.error is None and c.failure is not None for c in cases)
    skipped = sum(c.error is None and c.failure is None and c.skipped is not None for c in cases)
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": str(errors)}
    total = _seconds(sum(max(c.time_s, 0.0) for c in cases))
    root = ET.Element("testsuites", {"name": _clean(suite_name), **counts, "time": total})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": _clean(suite_name),
            **counts,
            "skipped": str(skipped),
            "time": total,
            "timestamp": _timestamp(timestamp),
            "hostname": _clean(socket.gethostname()) or "localhost",
            "id": "0",
            "package": _clean(suite_name),
        },
    )
    ET.SubElement(suite, "properties")
    for case in cases:
        _case(suite, case)
    ET.SubElement(suite, "system-out").text = ""
    ET.SubElement(suite, "system-err").text = ""
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, suite_name: str, cases: list[JUnitCase]) -> None:
    """Write the document atomically: a CI step reading it never sees half a file."""
    path = Path(path)
    atomic_write(path, junit_xml(suite_name, cases))
