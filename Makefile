# The stack from make: each target is one invoke task (or a chain), so exit codes pass through.
# `make up`, `make rotate`, ... ; ENV_FILE=path/to/.env selects another .env.
INVOKE ?= invoke
ENV_FLAG = $(if $(ENV_FILE),--env-file $(ENV_FILE),)

.PHONY: init check up down restart status logs key keys rotate

init:     ; $(INVOKE) env.init $(ENV_FLAG)
check:    ; $(INVOKE) env.check $(ENV_FLAG)
up:       ; $(INVOKE) stack.start $(ENV_FLAG)
down:     ; $(INVOKE) stack.stop $(ENV_FLAG)
restart:  ; $(INVOKE) stack.restart $(ENV_FLAG)
status:   ; $(INVOKE) stack.status $(ENV_FLAG)
logs:     ; $(INVOKE) stack.logs --tail 100 $(ENV_FLAG)
key:      ; $(INVOKE) keys.create $(ENV_FLAG)
keys:     ; $(INVOKE) keys.list $(ENV_FLAG)
rotate:   ; $(INVOKE) keys.rotate $(ENV_FLAG)
