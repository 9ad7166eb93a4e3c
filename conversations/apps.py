from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations and messages"

    def ready(self):
        # Register the tasks, so that they can be enqueued by name from anywhere.
        from conversations import tasks  # noqa: F401
