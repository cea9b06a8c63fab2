"""The admin face of the services layer: a JSON API under /admin/api/ and server-rendered pages
under /admin/ (templates and static files ship in the wheel)."""
