"""Where the server extension finds the user's credentials.

The analyst's domains and tokens come from a fednb profile (``$FEDNB_HOME/profiles.json``, written
by ``fednb.save_profile``); owner credentials from the same profile's ``"owner"`` list
(``fednb.client.profile.save_owner``) and from the server's config::

    # jupyter_server_config.py
    c.Fednb.profile = "default"
    c.Fednb.owners = [{"path": "/srv/fednb/hospital-a"},                        # a domain folder here
                      {"url": "https://hospital-b.example:8701", "token": "fednb_..."}]  # owner token
"""

from __future__ import annotations

import os

from traitlets import Dict, List, Unicode
from traitlets.config import Configurable


class Fednb(Configurable):
    """Settings of fednb's JupyterLab panels."""

    profile = Unicode(os.environ.get("FEDNB_PROFILE", "default"), config=True,
                      help="The fednb profile whose domains and tokens the panels use (env FEDNB_PROFILE).")
    owners = List(Dict(), config=True,
                  help="Owner credentials besides the profile's: {'path': DOMAIN_FOLDER} or {'url': URL, 'token': OWNER_TOKEN}.")
