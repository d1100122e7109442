import sys

from services.profile.app import create_app, create_runtime
from services.profile.config import Settings
from shared.cli import run_cli

sys.exit(run_cli(settings_factory=Settings, runtime_factory=create_runtime, app_factory=create_app))
