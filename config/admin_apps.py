"""The admin app, pointed at our site (PlatformAdminSite): throttled, audited login.

Listed in INSTALLED_APPS instead of ``django.contrib.admin``. The site is named by a string
so this module imports nothing that needs the app registry.
"""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class PlatformAdminConfig(AdminConfig):
    default_site = "config.admin_site.PlatformAdminSite"
