"""Rename the event classes to one scheme (issue 17), idempotently, in every tracked file.

The scheme: an envelope class (what travels on a topic, with ``type`` and ``data``) is
``<Fact>Event``; a payload named after a fact is ``<Fact>Payload``; a payload that is an
entity keeps the entity's name (``Order``, ``Customer``, ``ContactPolicy``). The wire
format (type strings, JSON) does not change. Run it again after merging a branch written
against the old names: ``python scripts/rename_events.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

#: old -> new; payloads first is not needed: every old name is a whole word of its own
RENAMES = {
    # payloads named after a fact
    "ProfileMerged": "ProfileMergedPayload",
    "ProfileUnmerged": "ProfileUnmergedPayload",
    "ProfileErased": "ProfileErasedPayload",
    "ProfileUpdated": "ProfileUpdatedPayload",
    "SegmentChanged": "SegmentChangedPayload",
    "SegmentDeleted": "SegmentDeletedPayload",
    "MessageRequested": "MessageRequestedPayload",
    # envelopes
    "OrderRecorded": "OrderRecordedEvent",
    "CustomerRecorded": "CustomerRecordedEvent",
    "InteractionRecorded": "InteractionRecordedEvent",
    "ContactPolicyChanged": "ContactPolicyChangedEvent",
    "ProfilesMerged": "ProfileMergedEvent",
    "ProfilesUnmerged": "ProfileUnmergedEvent",
    "MessageReceiptRecorded": "MessageReceiptRecordedEvent",
    "DeadLetterRecorded": "DeadLetterRecordedEvent",
    "ExportRequested": "ExportRequestedEvent",
    "ExportPartRecorded": "ExportPartRecordedEvent",
    "ApiKeyRecorded": "ApiKeyRecordedEvent",
    "ApiKeyUsed": "ApiKeyUsedEvent",
}
PATTERN = re.compile(r"\b(" + "|".join(map(re.escape, RENAMES)) + r")\b")
SKIP = {"scripts/rename_events.py", "docs/asyncapi.json"}


def main() -> int:
    files = subprocess.run(
        ["git", "ls-files", "*.py", "*.md"], capture_output=True, text=True, check=True
    ).stdout.split()
    changed = 0
    for name in files:
        if name in SKIP:
            continue
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        new = PATTERN.sub(lambda m: RENAMES[m.group(1)], text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed += 1
    print(f"{changed} file(s) rewritten; now regenerate docs/asyncapi.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
