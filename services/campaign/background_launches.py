"""Launches in the background: ``POST .../launch?wait=false`` answers 202 at once.

A launch of a large audience takes a while (about 40 s for 1,000,000 customers here);
longer than many HTTP clients wait. The launcher runs queued launches one at a time in
its own thread, with the same :func:`launch.launch` the synchronous call uses (resumable,
idempotent), so the two can be mixed: a second request for a campaign already queued or
running joins it. When the service stops, a running launch ends after the chunk it
committed last; the next launch call (or the scheduler, for a scheduled campaign)
resumes it from its cursor.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from services.campaign import service
from services.campaign.config import Settings
from services.campaign.launch import LAUNCHABLE, launch
from services.campaign.schemas import LaunchResult
from shared.db import Database
from shared.errors import Conflict

log = logging.getLogger(__name__)


class LaunchStopped(Exception):
    """The service is stopping: the launch ends after its last committed chunk."""


class Launcher:
    def __init__(self, db: Database, settings: Settings, notify: Callable[[], None]) -> None:
        self.db = db
        self.settings = settings
        self.notify = notify
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._active: set[str] = set()  # queued or running
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def launch_now(self, campaign_id: str) -> LaunchResult:
        """Launch (or resume) now and answer what it did; 409 while a background launch of
        it runs. The launch commits per chunk of customers (resumable): it owns its
        transactions."""
        if self.in_progress(campaign_id):
            raise Conflict("a background launch of this campaign is running; poll GET .../launch")
        outcome = launch(self.db, campaign_id, self.settings)
        self.notify()
        with self.db.sessions() as session:
            campaign = service.get_campaign(session, campaign_id)
            return service.launch_summary(
                session, campaign, outcome.run_no, outcome.resumed, outcome.already_launched
            )

    def launch_in_background(self, campaign_id: str) -> LaunchResult:
        """Queue a launch (joining one of it already queued or running) and answer the state
        so far; 404 if the campaign is unknown, 409 if it cannot be launched."""
        with self.db.sessions() as session:
            campaign = service.get_campaign(session, campaign_id)
            if campaign.status not in LAUNCHABLE:
                raise Conflict(
                    f"a {campaign.status} campaign cannot be launched", status_now=campaign.status
                )
        self.submit(campaign_id)
        return self.state(campaign_id)

    def state(self, campaign_id: str) -> LaunchResult:
        """What the campaign's launches did so far, and whether a background one still runs."""
        running = self.in_progress(campaign_id)
        with self.db.sessions() as session:
            campaign = service.get_campaign(session, campaign_id)
            summary = service.launch_summary(session, campaign, None, False, False)
        return summary.model_copy(update={"in_progress": running})

    def submit(self, campaign_id: str) -> bool:
        """Queue a launch; False if one of this campaign is already queued or running."""
        with self._lock:
            if campaign_id in self._active:
                return False
            self._active.add(campaign_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="campaign-launcher", daemon=True
                )
                self._thread.start()
        self._queue.put(campaign_id)
        return True

    def in_progress(self, campaign_id: str) -> bool:
        with self._lock:
            return campaign_id in self._active

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(30)

    def _work(self) -> None:
        while True:
            campaign_id = self._queue.get()
            if campaign_id is None:
                return
            try:
                if not self._stopping.is_set():
                    launch(self.db, campaign_id, self.settings, after_chunk=self._check_stop)
            except LaunchStopped:
                log.warning("campaign %s: launch stopped with the service; resumable", campaign_id)
            except Exception:
                log.exception("campaign %s: background launch failed", campaign_id)
            finally:
                with self._lock:
                    self._active.discard(campaign_id)
                self.notify()

    def _check_stop(self, _chunks: int) -> None:
        self.notify()  # each committed chunk's messages can go out now
        if self._stopping.is_set():
            raise LaunchStopped()
