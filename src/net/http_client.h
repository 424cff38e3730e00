// http_client.h — placeholder: the libcurl client for the remote (OpenAI-compatible) engines.
#pragma once
