from django.apps import AppConfig


class ContactsConfig(AppConfig):
    name = "contacts"
    verbose_name = "Organizations and contacts"

    def ready(self):
        # Register the tasks, so that they can be enqueued by name from anywhere.
        from contacts import tasks  # noqa: F401
