"""The ``softsensor`` command line.

It lives beside the server because the serving image runs it (``softsensor serve``,
``softsensor models promote``) without torch: this package imports no training code at
import time. The training commands (``simulate``, ``train``, ``retrain``) come from
``training.commands`` and are registered only where the ``train`` extra is installed;
elsewhere they answer with the install command instead of a traceback.
"""
