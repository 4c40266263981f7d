# Short names for the two commands used all day on Lightwhale.
alias d='docker'
alias d-c='docker compose'
