from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations and messages"

    def ready(self):
        from conversations.event_requests import EventProcessingRequests

        # This process's requests for event processing (debounced), held here rather than in
        # module globals.
        self.event_requests = EventProcessingRequests()
        # Register the tasks, so that they can be enqueued by name from anywhere.
        from conversations import tasks  # noqa: F401
