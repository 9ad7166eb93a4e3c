from django.apps import AppConfig


class DeliverabilityConfig(AppConfig):
    name = "deliverability"
    verbose_name = "Deliverability"

    def ready(self):
        # Register the tasks, so that they can be enqueued by name from anywhere.
        from deliverability import tasks  # noqa: F401
