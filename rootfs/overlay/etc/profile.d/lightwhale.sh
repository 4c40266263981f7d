# Short names for the two commands used all day on Lightwhale.
alias d='docker'
alias d-c='docker compose'
# ip, ss, swapon and friends live in /sbin; op uses them to look around.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac
