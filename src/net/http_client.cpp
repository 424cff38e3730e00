// http_client.cpp — placeholder
#include "net/http_client.h"
