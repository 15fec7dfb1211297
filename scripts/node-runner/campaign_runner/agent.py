"""The CloudWatch agent on GPU nodes: started right before the job, stopped right after it.

Started late because the GPU-idle alarm (treatMissingData: missing) would otherwise count the image pull and
the staging, at 0% GPU, as idle minutes; stopped early for the same reason: a long final upload at 0% GPU must not
trip it. Starting uses the agent's ctl (`-a fetch-config -m ec2 -s -c file:<config>`); stopping stops its
systemd unit, which is what `amazon-cloudwatch-agent-ctl -a stop` does on systemd hosts.
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/install-CloudWatch-Agent-commandline-fleet.html
"""
from __future__ import annotations

import os
import subprocess
import threading
from typing import Callable, Optional

from .aws import tail_brief


INSTALL_TIMEOUT_SECONDS = 600


class MetricsAgent:
    def __init__(self, ctl: str, service: str, config: Optional[str], install_script: Optional[str],
                 log: Callable[[str], None], warn: Callable[[str], None]):
        self.ctl, self.service, self.config, self.install_script = ctl, service, config, install_script
        self.log, self.warn = log, warn
        self.running = False
        self._installer: Optional[threading.Thread] = None

    def begin_install(self) -> None:
        """Installs the agent in the background (the AMI lacks it) while the runner stages inputs."""
        if not self.config or not self.install_script or os.access(self.ctl, os.X_OK):
            return

        def install() -> None:
            self.log("the CloudWatch agent is not installed: installing it with %s" % self.install_script)
            try:
                res = subprocess.run([self.install_script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     timeout=INSTALL_TIMEOUT_SECONDS, check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                self._problem("installing the CloudWatch agent failed: %s" % e)
                return
            if res.returncode != 0:
                self._problem("installing the CloudWatch agent failed (exit %d): %s"
                              % (res.returncode, tail_brief(res.stdout.decode("utf-8", "replace"))))
            else:
                self.log("CloudWatch agent installed")

        self._installer = threading.Thread(target=install, name="agent-install", daemon=True)
        self._installer.start()

    def start(self) -> None:
        if not self.config:
            return
        if self._installer is not None:
            self._installer.join(INSTALL_TIMEOUT_SECONDS + 10)
        if not os.access(self.ctl, os.X_OK):
            self._problem("%s is not installed: no GPU metrics in CloudWatch" % self.ctl)
            return
        try:
            res = subprocess.run([self.ctl, "-a", "fetch-config", "-m", "ec2", "-s", "-c", "file:%s" % self.config],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            self._problem("starting the CloudWatch agent failed (carrying on without GPU metrics): no answer in 120 s")
            return
        if res.returncode != 0:
            self._problem("starting the CloudWatch agent failed (carrying on without GPU metrics): exit %d: %s"
                          % (res.returncode, tail_brief(res.stdout.decode("utf-8", "replace"))))
            return
        self.running = True
        self.log("CloudWatch agent started with %s" % self.config)

    def stop(self) -> bool:
        """Stops the agent if this runner started it; True when a stop was done."""
        if not self.running:
            return False
        self.running = False
        try:
            res = subprocess.run(["systemctl", "stop", self.service], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            self._problem("stopping the CloudWatch agent failed: %s; the GPU-idle alarm may see the final upload" % e)
            return False
        if res.returncode != 0:
            self._problem("stopping the CloudWatch agent failed: %s; the GPU-idle alarm may see the final upload"
                          % tail_brief(res.stdout.decode("utf-8", "replace")))
            return False
        self.log("CloudWatch agent stopped (the job ended; the final upload runs at 0% GPU)")
        return True

    def _problem(self, message: str) -> None:
        self.log(message)
        self.warn(message)
