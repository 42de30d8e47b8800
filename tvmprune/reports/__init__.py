"""Reports: plain-text tables (:mod:`.tables`) shared by every command and script."""
