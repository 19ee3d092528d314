"""
The admin interface: placeholder until the web resources land.
"""

from twisted.web.resource import Resource
from twisted.web.server import Site


def make_admin_site(status, token):
    site = Site(Resource())
    site.noisy = False
    return site
