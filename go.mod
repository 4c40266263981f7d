module lightwhale

go 1.26.0
