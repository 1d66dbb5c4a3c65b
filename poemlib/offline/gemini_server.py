"""Old path of the loopback Gemini server, kept while callers move to `poemlib.offline.gemini`."""

from poemlib.offline.gemini import *
