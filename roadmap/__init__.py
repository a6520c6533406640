"""The app: the ``roadmap`` command and the web server, built on the steps' builders."""
