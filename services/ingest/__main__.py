import sys

from services.ingest.app import create_app, create_runtime
from services.ingest.cli import replay_command
from services.ingest.config import Settings
from shared.cli import run_cli

sys.exit(
    run_cli(
        settings_factory=Settings,
        runtime_factory=create_runtime,
        app_factory=create_app,
        extra_commands={"replay": replay_command},
    )
)
